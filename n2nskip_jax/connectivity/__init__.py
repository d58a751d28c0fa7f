"""Connectivity analysis of sparse networks (paper section 3.2; Dey et al. 2018)."""
from n2nskip_jax.connectivity.graph import Graph, network_graph

__all__ = ['Graph', 'network_graph']
