"""medfusion-bench harness: configs, run specs, masks, training loop, tracking, leaderboards."""

__version__ = "0.1.0"
