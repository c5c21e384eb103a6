"""The interception path: codec -> ``Operation`` -> ``plan(op, state)`` -> executor -> upstream."""
