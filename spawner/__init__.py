"""dshub's hub-side package: settings, the data pool, the spawner, the proxy and auth."""
