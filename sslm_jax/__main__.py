from sslm_jax.main import run

run()
