"""vae-explore: a page served on the loopback address for walking through a run's latent space.

space.py holds the loaded run and its held-out codes, api.py checks every request, server.py
serves the page (static/: plain HTML, JS and CSS, no framework, nothing fetched from elsewhere).
"""
