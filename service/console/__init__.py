"""The web console: server-rendered pages on the API app, sharing its stores and access layer.

``service.console.app.install(app)`` adds it to an app built by ``service.api.app.build_app``.
Screens are modules with ``router`` and ``NAV`` (see ``service.console.app.SCREENS``); they
depend on ``service.console.deps`` for the logged-in caller and render with
``service.console.render.page`` into templates extending ``base.html``. docs/console.md has
the whole picture.
"""
