"""Starting each user's server: a container on this engine, or a service of a swarm."""
