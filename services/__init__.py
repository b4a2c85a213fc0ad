"""Domain logic: rules, transitions and queries that matter. Views call these; they never decide."""
