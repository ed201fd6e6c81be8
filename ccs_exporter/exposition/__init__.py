"""The bytes ``/metrics`` serves: job families rendered once a cycle, per-scrape metrics, the formats."""
