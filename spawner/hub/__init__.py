"""What the hub serves besides JupyterHub's own: the edge (Traefik), sharing, culling, metrics."""
