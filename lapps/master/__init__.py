"""The master process: arbiter (lifecycle, signals), children (records, backoff, heartbeats),
listeners, balancer, deployer."""
