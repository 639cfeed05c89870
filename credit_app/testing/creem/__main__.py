"""`python -m credit_app.testing.creem --port 5056`: the Creem stand-in on its own."""

from credit_app.testing.creem.server import main

main()
