"""jobs: Ray Tune / Ray Data orchestration and the `fertune` command line."""
