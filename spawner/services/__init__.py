"""Small services of the stack, each in an image of its own: network policy, disk quotas."""
