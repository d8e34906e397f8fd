import sys

from sslm_jax.early_signals import install_for

install_for(sys.argv)  # before the imports below, which take seconds: a signal meanwhile is not lost

from sslm_jax.main import run  # noqa: E402

run()
