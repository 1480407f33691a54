"""Service levels watched: the monitor, its notices and the monthly scorecard."""
