"""Layer 6, workers: the Worker interface and the roster of event, task and user workers, the
bodies that run callbacks (event worker, PROCESS pipe worker), the event dispatcher, dispatch
modes, routers (where a Server call made in a callback goes) and the supervisor.
May import: layers 1-5."""
