"""Flask extensions, created unbound and initialised in the application factory."""

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from flask import Flask
from flask.globals import request_ctx
from flask_limiter import Limiter
from flask_login import LoginManager, current_user
from flask_migrate import Migrate
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData

# Where flask-limiter keeps a request's limit state (on the request context), once it checked
# a limit in that request.
LIMITER_STATE = "_limiter_request_context"


def rate_limit_key() -> str:
    """Rate-limit signed-in users by id, anonymous callers by address."""
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    from flask import request

    return f"ip:{request.remote_addr or 'unknown'}"


naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=naming_convention))

# The base class of the models. At run time it is `db.Model`; a type checker cannot take a
# class from an attribute (python/mypy#8603), so to it the base is spelled out: a declarative
# base (keyword constructor, `__table__`, `metadata`) with flask-sqlalchemy's `query`.
if TYPE_CHECKING:
    from flask_sqlalchemy.model import Model as FlaskSQLAlchemyModel
    from sqlalchemy.orm import DeclarativeBase

    class Model(FlaskSQLAlchemyModel, DeclarativeBase):
        pass
else:
    Model = db.Model

migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()


class ViewLimiter(Limiter):
    """flask-limiter for limits declared on views with `@limiter.limit`, which check their
    own limits when they are called.

    Its before-request check exists for default, application, blueprint and meta limits.
    This app sets none, so on every other request the check only worked out that nothing
    applies: about 130 Python calls, a tenth of an API request. It is skipped while none is
    configured, and runs as usual once one is. Its after-request (headers, deductions) and
    teardown (reset) hooks, about 55 calls more, likewise run only for a request in which a
    limit was checked: flask-limiter keeps its per-request state on the request context,
    and a request without that state has nothing to report or reset.
    """

    def init_app(self, app: Flask) -> None:
        super().init_app(app)
        for hooks in (
            app.after_request_funcs.get(None, []),
            app.teardown_request_funcs.get(None, []),
        ):
            hooks[:] = [
                self._after_a_check(hook) if self._registered(hook) else hook for hook in hooks
            ]

    def _registered(self, hook: Callable) -> bool:
        """Whether `hook` is one flask-limiter registered for this limiter."""
        return getattr(hook, "__self__", None) is self or (
            isinstance(hook, partial) and hook.args[:1] == (self,)
        )

    @staticmethod
    def _after_a_check(hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def run_if_checked(value: Any) -> Any:
            if not hasattr(request_ctx._get_current_object(), LIMITER_STATE):
                return value
            return hook(value)

        return run_if_checked

    def _check_request_limit(
        self, callable_name: str | None = None, in_middleware: bool = True
    ) -> None:
        if in_middleware and not self._has_request_wide_limits():
            return
        super()._check_request_limit(callable_name, in_middleware)

    def _has_request_wide_limits(self) -> bool:
        manager = self.limit_manager
        return bool(
            manager.default_limits
            or manager.application_limits
            or manager._blueprint_limits
            or self._meta_limits
        )


limiter = ViewLimiter(key_func=rate_limit_key)
sock = Sock()
