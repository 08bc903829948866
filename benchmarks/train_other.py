"""Outlier exposure with an extra "other scanner" output, trained on many virtual scanner designs.

The network keeps its Ns class outputs (architecture v1, so the dense engine, the
reliability maps and every reader of model files are unchanged). During training
the last linear layer gets one more row, the "other scanner" logit, and the loss is
cross-entropy over Ns + 1 outputs: windows of the known scanners carry their class,
windows of *other* scanner designs carry the extra label. The virtual bank can make
any number of designs; they come from bank names (``--oe-bank``) that are never the
bank the benchmark uses as unknown scanners (``elsewhere``), and a fresh set of
designs is drawn every round.

After training, the extra row (weight and bias) is stored in the model file as the
``open_set.other_weight`` / ``open_set.other_bias`` tensors, and
``scanlab.core.evidence.openset`` scores each window with P(other) = softmax over the Ns + 1
logits; the image's unknown score is the mean over its windows with evidence.

The known-scanner data is the model's own training split, re-simulated from the
manifest's file list (default bank, content seed of the bank).

    python benchmarks/train_other.py --model trained_models/scanlab-default.safetensors \\
        -o /tmp/other.pt --steps 4000

Robust to the delivery chain (issue 17 item 3): ``--chain-p P`` sends each known scan
and each outlier scan, with probability P, through one random delivery path
(:func:`scanlab.core.io.delivery.delivered`: tone, resampling, JPEG re-compression)
applied to the *whole* scan, as a questioned file really arrives; a known scan keeps
its scanner label. The known pool is transformed again every round. ``--train
last-block`` fine-tunes only the last inception block, the class rows and the extra
row (batch-norm statistics fixed), and ``--init-other`` starts the extra row from the
model file's own, so the shipped model is fine-tuned rather than retrained:

    python benchmarks/train_other.py -o /tmp/chain.pt --chain-p 0.5 --train last-block \\
        --init-other --steps 3000 --lr 0.003 --oe-designs 200 --round-steps 300 --oe-bank oe-chain
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from evidence_data import resimulate  # noqa: E402

from scanlab.core.engine.network import PATCH  # noqa: E402
from scanlab.core.io.delivery import delivered  # noqa: E402
from scanlab.core.modelfile.store import load_model  # noqa: E402
from scanlab.core.synth.bank import synth_scan  # noqa: E402
from scanlab.core.synth.scanner import decode, design  # noqa: E402


def _known(rel: str) -> np.ndarray:
    return decode(resimulate(rel))


def _outlier(args: tuple[str, int, int, float]) -> np.ndarray:
    bank_name, index, size, chain_p = args
    img = decode(synth_scan(design(bank_name, index), 0, seed=7, size=size).data)
    rng = np.random.default_rng([index, size, 11])
    return delivered(img, rng)[0] if rng.random() < chain_p else img


def _deliver(args: tuple[np.ndarray, int, float]) -> tuple[np.ndarray, bool]:
    """A known scan as it may arrive (with probability ``chain_p``), the same scanner label; and whether it went."""
    img, seed, chain_p = args
    rng = np.random.default_rng(seed)
    return (delivered(img, rng)[0], True) if rng.random() < chain_p else (img, False)


def _maps(frozen, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Output of the frozen lower layers, computed once per round for a pool of windows.

    Float32: the scanner traces are small differences in the maps.
    """
    with torch.inference_mode():
        return torch.cat([frozen(x[s : s + batch]) for s in range(0, len(x), batch)])


def _train_last_block(a: argparse.Namespace, lm, known: list[np.ndarray], labels: np.ndarray,
                      rng: np.random.Generator) -> None:
    """Fine-tune the last block, the class rows and the extra row on pools of windows drawn each round.

    The stem and the first block are frozen and batch norm keeps its statistics, so each
    round a pool of known windows (scans through the delivery chain with probability
    ``--chain-p``, a fresh path per scan and round) and of outlier windows goes through
    the frozen layers once; the steps then run the last block and the head only (about
    a tenth of the arithmetic), which is what makes this affordable on a shared CPU.
    """
    net, ns = lm.net.eval(), len(lm.classes)
    lower = torch.nn.Sequential(net.stem, net.pool1, net.inc1, net.pool2)
    for p in lower.parameters():
        p.requires_grad = False

    def frozen(x: torch.Tensor) -> torch.Tensor:
        return lower(x - 0.5)  # the trunk centres its input first (ScannerNet.trunk)

    w_other = torch.nn.Parameter(torch.zeros(1, net.fc.in_features))
    b_other = torch.nn.Parameter(torch.full((1,), a.other_bias))
    if a.init_other:
        w_other.data[0] = lm.extras["open_set.other_weight"].float().reshape(-1)
        b_other.data[:] = lm.extras["open_set.other_bias"].float().reshape(-1)
    params = [p for p in net.parameters() if p.requires_grad] + [w_other, b_other]
    opt = torch.optim.SGD(params, lr=a.lr, momentum=0.9, weight_decay=1e-4)
    hist: list[dict] = []
    t0 = time.time()
    keys = ("k_loss", "o_loss", "k_acc_scanned", "k_acc_delivered", "o_acc")
    run = dict.fromkeys(keys, 0.0) | {"n": 0, "n_sc": 0, "n_dl": 0}
    for step in range(a.steps):
        if step % a.round_steps == 0:
            rnd, t2 = step // a.round_steps, time.time()
            with ProcessPoolExecutor(a.threads) as ex:
                outl = list(ex.map(_outlier, [(f"{a.oe_bank}-r{rnd}", i, a.oe_size, a.chain_p)
                                              for i in range(a.oe_designs)], chunksize=8))
                pick = rng.choice(len(known), min(len(known), a.pool_scans), replace=False)
                jobs = [(known[k], a.seed * 1_000_003 + rnd * 10_007 + int(k), a.chain_p) for k in pick]
                got = list(ex.map(_deliver, jobs, chunksize=16))
            imgs, went = [g[0] for g in got], np.array([g[1] for g in got])
            ik = rng.integers(0, len(imgs), a.pool)
            k_maps, k_lab, k_dl = _maps(frozen, _patches(imgs, ik, rng)), torch.from_numpy(labels[pick][ik]), went[ik]
            o_maps = _maps(frozen, _patches(outl, rng.integers(0, len(outl), a.pool), rng))
            print(f"round {rnd}: {len(pick)} known scans ({int(went.sum())} delivered), {len(outl)} outlier "
                  f"designs, {a.pool} + {a.pool} windows ({time.time() - t2:.0f}s)", file=sys.stderr, flush=True)
        lr = 0.5 * a.lr * (1 + math.cos(math.pi * step / a.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        ik = rng.integers(0, len(k_maps), a.batch)
        io = rng.integers(0, len(o_maps), a.batch)
        h = torch.cat([k_maps[ik], o_maps[io]]).float()
        y = torch.cat([k_lab[ik], torch.full((a.batch,), ns)])
        feats = net.inc2(h).mean(dim=(2, 3))
        z = torch.cat([net.fc(feats), F.linear(feats, w_other, b_other)], dim=1)
        each = F.cross_entropy(z, y, reduction="none")
        opt.zero_grad(set_to_none=True)
        each.mean().backward()
        opt.step()
        with torch.no_grad():
            ok = (z.argmax(1) == y).float().numpy()
            dl = k_dl[ik]
            run["k_loss"] += float(each[: a.batch].mean())
            run["o_loss"] += float(each[a.batch :].mean())
            run["k_acc_scanned"] += float(ok[: a.batch][~dl].sum())
            run["k_acc_delivered"] += float(ok[: a.batch][dl].sum())
            run["o_acc"] += float(ok[a.batch :].mean())
            run["n"] += 1
            run["n_sc"] += int((~dl).sum())
            run["n_dl"] += int(dl.sum())
        if (step + 1) % 50 == 0:
            n, n_sc, n_dl = run["n"], max(1, run["n_sc"]), max(1, run["n_dl"])
            rec = {"step": step + 1, "lr": round(lr, 6), "k_loss": round(run["k_loss"] / n, 4),
                   "o_loss": round(run["o_loss"] / n, 4), "k_acc_scanned": round(run["k_acc_scanned"] / n_sc, 4),
                   "k_acc_delivered": round(run["k_acc_delivered"] / n_dl, 4), "o_acc": round(run["o_acc"] / n, 4),
                   "seconds": round(time.time() - t0, 1)}
            hist.append(rec)
            print(json.dumps(rec), file=sys.stderr, flush=True)
            run = dict.fromkeys(keys, 0.0) | {"n": 0, "n_sc": 0, "n_dl": 0}
        if step + 1 == a.steps or (a.keep_every and (step + 1) % a.keep_every == 0):
            ck = {"state": net.state_dict(), "other_weight": w_other.detach()[0].clone(),
                  "other_bias": b_other.detach().clone(), "history": hist, "args": vars(a)}
            torch.save(ck, a.output)
            if a.keep_every and (step + 1) % a.keep_every == 0:
                torch.save(ck, str(Path(a.output).with_suffix("")) + f"-s{step + 1}.pt")
    print(json.dumps({"steps": a.steps, "seconds": round(time.time() - t0, 1), "output": a.output}))


def _patches(images: list[np.ndarray], idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    out = np.empty((len(idx), PATCH, PATCH, 3), dtype=np.uint8)
    for j, i in enumerate(idx):
        im = images[i]
        y = rng.integers(0, im.shape[0] - PATCH + 1)
        x = rng.integers(0, im.shape[1] - PATCH + 1)
        out[j] = im[y : y + PATCH, x : x + PATCH]
    return torch.from_numpy(out.transpose(0, 3, 1, 2).copy()).float().div_(255.0)


def main() -> None:
    """Train and write a checkpoint (.pt) with the network state and the extra output row."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="trained_models/scanlab-default.safetensors")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--oe-bank", default="oe-train")
    ap.add_argument("--oe-designs", type=int, default=400, help="new outlier designs per round")
    ap.add_argument("--oe-size", type=int, default=320)
    ap.add_argument("--round-steps", type=int, default=500, help="steps between new outlier designs")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=64, help="known windows per step (as many outlier windows)")
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--other-bias", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chain-p", type=float, default=0.0,
                    help="probability that a known or outlier scan goes through the delivery chain")
    ap.add_argument("--train", choices=["all", "last-block"], default="all",
                    help="last-block: only the last inception block and the head learn (batch norm fixed)")
    ap.add_argument("--init-other", action="store_true", help="start the extra row from the model file's")
    ap.add_argument("--keep-every", type=int, default=0, help="also keep a checkpoint every N steps (-sN.pt)")
    ap.add_argument("--pool", type=int, default=3072, help="last-block: known (and outlier) windows per round")
    ap.add_argument("--pool-scans", type=int, default=400, help="last-block: known scans delivered per round")
    ap.add_argument("--known-cache", default=None, help="last-block: .npy of the decoded known scans (reused)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    lm = load_model(a.model)
    ns = len(lm.classes)
    t0 = time.time()
    rels = lm.manifest["training"]["data"]["files"]["train"]
    labels = np.array([lm.classes.index(r.split("/")[0]) for r in rels])
    if a.known_cache and Path(a.known_cache).exists():
        known = list(np.load(a.known_cache, mmap_mode="r"))
    else:
        with ProcessPoolExecutor(a.threads) as ex:
            known = list(ex.map(_known, rels, chunksize=16))
        if a.known_cache and len({k.shape for k in known}) == 1:
            np.save(a.known_cache, np.stack(known))
    print(f"known: {len(known)} scans ({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
    if a.train == "last-block":
        _train_last_block(a, lm, known, labels, rng)
        return

    net = lm.net
    fc = net.fc
    w_other = torch.nn.Parameter(torch.zeros(1, fc.in_features))
    b_other = torch.nn.Parameter(torch.full((1,), a.other_bias))
    if a.init_other:
        w_other.data[0] = lm.extras["open_set.other_weight"].float().reshape(-1)
        b_other.data[:] = lm.extras["open_set.other_bias"].float().reshape(-1)
    params = list(net.parameters()) + [w_other, b_other]
    as_scanned = known
    opt = torch.optim.SGD(params, lr=a.lr, momentum=0.9, weight_decay=1e-4)
    hist = []
    outliers: list[np.ndarray] = []
    run = {"k_loss": 0.0, "o_loss": 0.0, "k_acc": 0.0, "o_acc": 0.0, "n": 0}
    t1 = time.time()
    for step in range(a.steps):
        if step % a.round_steps == 0:
            rnd = step // a.round_steps
            t2 = time.time()
            with ProcessPoolExecutor(a.threads) as ex:
                outliers = list(ex.map(_outlier, [(f"{a.oe_bank}-r{rnd}", i, a.oe_size, a.chain_p)
                                                  for i in range(a.oe_designs)], chunksize=8))
                if a.chain_p > 0:  # a new delivery path for every known scan each round
                    jobs = [(im, a.seed * 1_000_003 + rnd * 10_007 + k, a.chain_p) for k, im in enumerate(as_scanned)]
                    known = [g[0] for g in ex.map(_deliver, jobs, chunksize=16)]
            print(f"round {rnd}: {len(outliers)} outlier designs ({time.time() - t2:.0f}s)", file=sys.stderr, flush=True)
        lr = 0.5 * a.lr * (1 + math.cos(math.pi * step / a.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        net.train()
        ik = rng.integers(0, len(known), a.batch)
        io = rng.integers(0, len(outliers), a.batch)
        x = torch.cat([_patches(known, ik, rng), _patches(outliers, io, rng)])
        y = torch.cat([torch.from_numpy(labels[ik]), torch.full((a.batch,), ns)])
        feats = net.trunk(x).mean(dim=(2, 3))
        z = torch.cat([fc(feats), F.linear(feats, w_other, b_other)], dim=1)
        loss_each = F.cross_entropy(z, y, reduction="none")
        loss = loss_each.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            pred = z.argmax(1)
            run["k_loss"] += float(loss_each[: a.batch].mean())
            run["o_loss"] += float(loss_each[a.batch :].mean())
            run["k_acc"] += float((pred[: a.batch] == y[: a.batch]).float().mean())
            run["o_acc"] += float((pred[a.batch :] == ns).float().mean())
            run["n"] += 1
        if (step + 1) % 100 == 0:
            n = run.pop("n")
            rec = {"step": step + 1, "lr": round(lr, 6), **{k: round(v / n, 4) for k, v in run.items()},
                   "seconds": round(time.time() - t1, 1)}
            hist.append(rec)
            print(json.dumps(rec), file=sys.stderr, flush=True)
            run = {"k_loss": 0.0, "o_loss": 0.0, "k_acc": 0.0, "o_acc": 0.0, "n": 0}
        if (step + 1) % 500 == 0 or step + 1 == a.steps or (a.keep_every and (step + 1) % a.keep_every == 0):
            ck = {"state": net.state_dict(), "other_weight": w_other.detach()[0].clone(),
                  "other_bias": b_other.detach().clone(), "history": hist, "args": vars(a)}
            torch.save(ck, a.output)
            if a.keep_every and (step + 1) % a.keep_every == 0:
                torch.save(ck, str(Path(a.output).with_suffix("")) + f"-s{step + 1}.pt")
    net.eval()
    print(json.dumps({"steps": a.steps, "seconds": round(time.time() - t0, 1), "output": a.output}))


if __name__ == "__main__":
    main()
