"""The GPU fleet's control plane (the FleetLayer): the pure scaling policy (policy), one controller tick
over every tier (controller, scheduled), Spot replacement (spot), and the AWS adapters behind ports."""
