"""serve: the Ray Serve app that hosts a fertune model over HTTP."""
