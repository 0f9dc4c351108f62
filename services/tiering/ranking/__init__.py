"""The set-based ranking: every customer under a policy as of a moment, as arrays.

- `figures`: what the methods read, as numpy columns (read by binary COPY on PostgreSQL);
- `compute`: the methods over those columns (bands, rules, RFM, value matrix,
  thermometer, churn risk), for everyone at once or for a few customers;
- `store`: the full re-rank, which writes the score rows that changed;
- `placement`: customers touched by events, placed against the latest ranking's edges;
- `explain`: the reasons and figures people read;
- `summary`: customers, revenue and collections per tier.
"""
