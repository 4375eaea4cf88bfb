"""Pre-flight checks of a config's model: every type registered, the backbone's arguments, the
neck's input channels. Run by the tools before any work, so that bad input is one error line."""
from ..errors import ToolError, unknown_type_message


def check_model_types(cfg):
    """Check the ``type`` of the model and of its direct parts (backbone, neck, heads, ...).

    Catches a misspelt or unregistered backbone before the runner prints its whole config.

    Args:
        cfg (mmengine.Config): The config.

    Raises:
        ToolError: For a type that the model registry does not know.
    """
    from mmdet.registry import MODELS
    model = cfg.get('model')
    if not isinstance(model, dict):
        return
    parts = [('model', model)] + [(f'model.{key}', value) for key, value in model.items()
                                  if isinstance(value, dict) and key != 'init_cfg']
    for where, part in parts:
        name = part.get('type')
        if isinstance(name, str) and MODELS.get(name) is None:
            raise ToolError(unknown_type_message(name, 'mmdet::model', f'{where}.type'))
    check_backbone(model)


def check_backbone(model):
    """Check the arguments of a backbone of this plugin and the neck's ``in_channels`` against it.

    The backbone is planned, not built (:meth:`ResidualNetwork.plan`): a bad argument (``style``,
    ``stage_with_dcn``, a plugin position, ...) gives its own message instead of mmengine's wrapped
    one, and a neck built for ResNet's channels (``[256, 512, 1024, 2048]``) in front of a
    ResGroup-block backbone is caught before training.

    Args:
        model (dict): The ``model`` entry of the config.

    Raises:
        ToolError: For a backbone that cannot be built or a neck that does not fit it.
    """
    from mmdet.registry import MODELS
    from ..models.backbones import BackboneConfigError, ResidualNetwork
    backbone = model.get('backbone')
    if not isinstance(backbone, dict) or not isinstance(backbone.get('type'), str):
        return
    cls = MODELS.get(backbone['type'])
    if not (isinstance(cls, type) and issubclass(cls, ResidualNetwork)):
        return
    args = {k: v for k, v in backbone.items() if k != 'type'}
    try:
        plan = cls.plan(**args)
    except (BackboneConfigError, KeyError) as exc:
        text = exc.args[0] if exc.args else exc
        raise ToolError(f'model.backbone ({backbone["type"]}): {text}') from None
    except TypeError as exc:
        raise ToolError(f'model.backbone ({backbone["type"]}): {exc}; see the Args of '
                        f'{cls.__name__} in docs/backbones.md') from None
    _check_neck(model.get('neck'), backbone['type'], plan)


def _check_neck(neck, backbone_type, plan):
    """The neck's ``in_channels`` must be the channels of the backbone's outputs."""
    if isinstance(neck, (list, tuple)) and neck:
        neck = neck[0]
    in_channels = neck.get('in_channels') if isinstance(neck, dict) else None
    if not isinstance(in_channels, (list, tuple)):
        return
    channels = plan.stage_out_channels()
    outputs = [channels[i] for i in plan.out_indices]
    if list(in_channels) != outputs:
        raise ToolError(
            f'{backbone_type}-{plan.depth} outputs {tuple(outputs)} at out_indices '
            f'{plan.out_indices}, but model.neck.in_channels is {list(in_channels)}; set '
            f'model.neck.in_channels to {outputs}')
