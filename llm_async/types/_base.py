"""The base classes of the models: a ``model_construct`` that builds instances without
pydantic's per-field default resolution, and the strict base of the request-side models."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from typing_extensions import Self

_IMMUTABLE_DEFAULTS = (str, int, float, bool, bytes, Decimal, tuple, frozenset, type(None))
_REQUIRED = object()
_M = TypeVar("_M", bound=BaseModel)


class _ConstructPlan:
    """How to build one model class without validation: a template ``__dict__`` (every field in
    order, static defaults filled in), the fields with a default factory, the required ones."""

    __slots__ = ("factories", "names", "required", "template")

    def __init__(self, cls: type[BaseModel]) -> None:
        self.template: dict[str, Any] = {}
        self.factories: list[tuple[str, Callable[[], Any]]] = []
        self.required: list[str] = []
        for name, info in cls.__pydantic_fields__.items():
            self.template[name] = None
            if info.default_factory is not None:
                factory: Any = info.default_factory
                if (isinstance(factory, type) and issubclass(factory, _FastConstruct)
                        and _ConstructPlan.supports(factory)):
                    # A model made with every field at its default: the same instance as
                    # ``factory()`` without validating the defaults.
                    factory = factory.model_construct
                self.factories.append((name, factory))
            elif info.is_required():
                self.required.append(name)
            else:
                self.template[name] = info.default
        self.names = frozenset(self.template)

    @staticmethod
    def supports(cls: type[BaseModel]) -> bool:
        if (cls.__pydantic_post_init__ or cls.__pydantic_root_model__
                or cls.model_config.get("extra") == "allow"):
            return False
        for info in cls.__pydantic_fields__.values():
            if info.alias is not None or info.validation_alias is not None:
                return False
            if info.default_factory is not None:
                if info.default_factory_takes_validated_data:
                    return False
            elif not info.is_required() and not isinstance(info.default, _IMMUTABLE_DEFAULTS):
                return False
        return True


#: Per model class, its plan, or None when it needs pydantic's own ``model_construct``.
_CONSTRUCT_PLANS: dict[type, _ConstructPlan | None] = {}


class _FastConstruct(BaseModel):
    """``model_construct`` without pydantic's per-field default resolution.

    Transports build every response and stream chunk with ``model_construct`` (the values are
    already known to be right); pydantic's version resolved each default through a slow generic
    path that cost more than validating. This builds the same instance (same ``__dict__`` in
    field order, same fields set) for classes without aliases, private attributes or extras, and
    defers to pydantic for any other.
    """

    @classmethod
    def model_construct(  # type: ignore[override]  # the pydantic plugin renames cls
        cls, _fields_set: set[str] | None = None, **values: Any
    ) -> Self:
        plan = _CONSTRUCT_PLANS.get(cls, _REQUIRED)
        if plan is _REQUIRED:
            plan = _CONSTRUCT_PLANS[cls] = (_ConstructPlan(cls) if _ConstructPlan.supports(cls)
                                            else None)
        if plan is None:
            return super().model_construct(_fields_set, **values)
        assert isinstance(plan, _ConstructPlan)
        data = plan.template.copy()
        if plan.names.issuperset(values):
            data.update(values)
            given = set(values)
        else:  # unknown names are ignored, as pydantic does
            given = set(plan.names.intersection(values))
            for name in given:
                data[name] = values[name]
        for name, factory in plan.factories:
            if name not in given:
                data[name] = factory()
        for name in plan.required:
            if name not in given:
                del data[name]
        return trusted_instance(cls, data, given if _fields_set is None else _fields_set)


_new = object.__new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def trusted_instance(cls: type[_M], data: dict[str, Any], fields_set: set[str],
                     extra: dict[str, Any] | None = None) -> _M:
    """An instance of ``cls`` whose ``__dict__`` is ``data`` (every field, in field order, with
    values already of their fields' types), built without validation or default handling."""
    obj = _new(cls)
    _set_dict(obj, data)
    _set_fields_set(obj, fields_set)
    _set_extra(obj, extra)
    _set_private(obj, None)
    return obj


def trusted_copy(obj: _M, update: dict[str, Any]) -> _M:
    """``obj.model_copy(update=update)`` (a shallow copy with ``update``'s fields replaced), for
    update values already of their fields' types: no validation, as ``model_copy`` does none
    either, without its generic copying machinery."""
    if obj.__pydantic_private__ is not None:
        return obj.model_copy(update=update)
    data = obj.__dict__.copy()
    data.update(update)
    extra = obj.__pydantic_extra__
    return trusted_instance(type(obj), data, obj.__pydantic_fields_set__ | update.keys(),
                            None if extra is None else extra.copy())


class _Model(_FastConstruct):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
