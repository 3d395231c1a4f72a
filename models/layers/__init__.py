"""Neural-network building blocks shared by model families."""
