"""The networks and what describes them: the invertible-block contract, Haar steps, affine couplings, subnets, the
memory-saving chain, InvDN (paper), InvDN-LC (default), DANet, the model registry, weights files and FLOPs."""
