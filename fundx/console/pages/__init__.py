"""The console's pages, one module per page. Each module's ``add_routes(app, console)`` adds its routes
to the FastAPI app that :func:`fundx.console.app.create_app` builds, over that app's
:class:`fundx.console.context.ConsoleContext`."""
