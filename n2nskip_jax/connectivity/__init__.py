"""Connectivity analysis of sparse networks (paper Sec. 3.2; Dey et al. 2018).

Heat diffusion on a channel graph (``heat``: Eqs. 3-7), scatter (``scatter``), the channel
graph of a masked network (``graph``) and the analysis of a run (``analysis``), exported here:

    from n2nskip_jax.connectivity import laplacian, heat_kernel, heat_signature, analyze
"""
from n2nskip_jax.connectivity.analysis import analyze, load_run
from n2nskip_jax.connectivity.graph import Graph, network_graph
from n2nskip_jax.connectivity.heat import (connectivity_distance, heat_kernel, heat_signature,
                                           laplacian, saturation_distance, scree)
from n2nskip_jax.connectivity.scatter import junction_scatter, layer_scatter, network_scatter

__all__ = ['Graph', 'analyze', 'connectivity_distance', 'heat_kernel', 'heat_signature',
           'junction_scatter', 'laplacian', 'layer_scatter', 'load_run', 'network_graph',
           'network_scatter', 'saturation_distance', 'scree']
