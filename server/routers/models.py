"""/v1/models: the registry, loading and unloading. Ids may contain '/', percent-encoded by the SDK."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from models.provider import ModelProvider
from models.registry import ModelSpec
from server.deps import get_provider, require_json
from server.schemas.models import LoadModelRequest, ModelDeleted, ModelList, ModelObject

router = APIRouter(prefix="/v1", tags=["models"])


def model_object(provider: ModelProvider, spec: ModelSpec) -> ModelObject:
    resident = provider.resident_of(spec.id)
    details = resident.details if resident is not None else {}
    return ModelObject(
        id=spec.id,
        created=spec.created,
        owned_by=spec.owned_by,
        task=spec.task,
        capabilities=list(spec.capabilities),
        loaded=provider.is_loaded(spec.id),
        aliases=provider.registry.aliases_of(spec.id),
        description=spec.description,
        backend=details.get("backend"),
        backend_reason=details.get("backend_reason"),
    )


@router.get("/models", response_model=ModelList)
async def list_models(provider: ModelProvider = Depends(get_provider)) -> ModelList:
    return ModelList(data=[model_object(provider, s) for s in provider.registry.list()])


@router.get("/models/{model:path}", response_model=ModelObject)
async def retrieve_model(model: str, provider: ModelProvider = Depends(get_provider)) -> ModelObject:
    return model_object(provider, provider.registry.get(model))


@router.post("/models", response_model=ModelObject, dependencies=[Depends(require_json)])
async def load_model(body: LoadModelRequest, provider: ModelProvider = Depends(get_provider)) -> ModelObject:
    res = await provider.load(body.model)
    return model_object(provider, res.spec)


@router.delete("/models/{model:path}", response_model=ModelDeleted)
async def unload_model(model: str, provider: ModelProvider = Depends(get_provider)) -> ModelDeleted:
    spec = provider.registry.get(model)
    return ModelDeleted(id=spec.id, deleted=await provider.unload(spec.id))
