"""The deployment's settings (.env), the profiles file and where things live in the hub container."""
