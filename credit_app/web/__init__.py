"""The web layer: blueprints and the glue between HTTP and the domain (auth, forms,
schemas, templating, responses). It may import the domain and the platform; nothing imports it
but the app factory and the CLI."""
