"""The runtime without a web framework or a server: tasks, ping status, admission,
the event loop, background work and the invocation pipeline (``Runtime``)."""
