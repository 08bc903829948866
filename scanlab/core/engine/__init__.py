"""The CNN and the engines that run it: network, fused inference trunk, naive and
dense sliding-window engines, patch grids and the eq. (1) reliability map."""
