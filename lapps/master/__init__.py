"""The master process: arbiter (lifecycle, signals), listeners, balancer, ACL."""
