"""medfusion-bench orchestration (layer 3: ``config``, ``grid``, ``training``, ``cells``,
``execution``, ``tracking``, ``tuning``, ``summary``, ``checks``) and the thin CLI on top
(``run``, ``tune``, ``leaderboard``, ``server``).  Methods and datasets build on ``core`` only."""

__version__ = "0.1.0"
