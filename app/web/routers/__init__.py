"""One router per role; the role check sits on the router, not on each route."""
