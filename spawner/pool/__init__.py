"""The data pool: each user's folder on the host, owned by their own uid, and its disk use."""
