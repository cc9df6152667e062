"""A CUDA device emulated on the CPU: catches tensors left on the wrong device, without a GPU.

Inside `emulated_cuda()`:
- `torch.cuda.is_available()` is True, so code that picks its device picks "cuda";
- a tensor made on, or moved to, "cuda" is an `EmulatedTensor`: a CPU tensor holding the
  values, wrapped so that it reports another device. Every computation is real (the same
  CPU arithmetic as outside), so results can be compared with a CPU run;
- an operator given both an emulated tensor and a CPU tensor that is not a 0-dim scalar
  raises `EmulatedDeviceMismatch`, as CUDA raises "Expected all tensors to be on the same
  device". Copies between the devices (`.to`, `.cpu()`, `copy_`) are allowed, as on CUDA.
  This is stricter than CUDA in one place: CUDA accepts CPU index tensors for indexing;
  here every index must follow the device of what it indexes.

The emulated tensors report the `meta` device: a CUDA build of torch without a driver
cannot run autograd on tensors that claim to be on CUDA (it asks the driver for streams),
while autograd treats `meta` like the CPU. So `tensor.device` reads `meta` (code that
follows `x.device` works unchanged), and `torch.device("cuda")` given to any torch function
is read as that emulated device.
"""

import contextlib
from unittest import mock

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils._pytree import tree_flatten, tree_map

EMULATED = torch.device("meta")
aten = torch.ops.aten
CROSS_DEVICE_COPIES = (aten.copy_.default, aten._copy_from.default, aten._copy_from_and_resize.default)
# torch functions that build a tensor from Python data and then place it (below the Python dispatcher)
DATA_CONSTRUCTORS = (torch.tensor, torch.as_tensor, torch.asarray)


class EmulatedDeviceMismatch(RuntimeError):
    """An operator met tensors on the emulated device and on the CPU."""


class EmulatedTensor(torch.Tensor):
    """A CPU tensor (`inner`) presented as living on the emulated device."""

    @staticmethod
    def __new__(cls, inner: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(
            cls, inner.shape, strides=inner.stride(), storage_offset=inner.storage_offset(),
            dtype=inner.dtype, layout=inner.layout, device=EMULATED, requires_grad=inner.requires_grad,
        )

    def __init__(self, inner: torch.Tensor):
        self.inner = inner

    def __repr__(self):
        return f"EmulatedTensor({self.inner!r})"

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


def _is_emulated_device(device) -> bool:
    return device is not None and torch.device(device).type in ("cuda", EMULATED.type)


def _run(func, args, kwargs):
    """Run `func` on the CPU values; check that its tensors share a device; place the outputs."""
    devices = set()
    for value in tree_flatten((args, kwargs))[0]:
        if isinstance(value, EmulatedTensor):
            devices.add("emulated cuda")
        elif isinstance(value, torch.Tensor) and value.dim() > 0:
            devices.add("cpu")
    emulated_out = "emulated cuda" in devices
    if kwargs.get("device") is not None:
        emulated_out = _is_emulated_device(kwargs["device"])
        kwargs = dict(kwargs, device=torch.device("cpu"))
    elif func in CROSS_DEVICE_COPIES:
        emulated_out = isinstance(args[0], EmulatedTensor)
    elif len(devices) > 1:
        shapes = [tuple(v.shape) + (("cuda",) if isinstance(v, EmulatedTensor) else ("cpu",))
                  for v in tree_flatten((args, kwargs))[0] if isinstance(v, torch.Tensor)]
        raise EmulatedDeviceMismatch(
            f"Expected all tensors to be on the same device, but found cuda and cpu in {func} "
            f"(shapes and devices {shapes})")
    wrappers = {}

    def unwrap(value):
        if isinstance(value, EmulatedTensor):
            wrappers[id(value.inner)] = value
            return value.inner
        return value

    out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs))

    def place(value):
        if isinstance(value, torch.Tensor) and not isinstance(value, EmulatedTensor):
            if id(value) in wrappers:  # an in-place operator returns its input
                return wrappers[id(value)]
            return EmulatedTensor(value) if emulated_out else value
        return value

    return tree_map(place, out)


class _EmulatedDispatch(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.on_device = 0  # operators that ran on the emulated device

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = _run(func, args, kwargs or {})
        self.on_device += any(isinstance(value, EmulatedTensor) for value in tree_flatten(out)[0])
        return out


def _as_emulated(value, strings: bool):
    """A CUDA device (a torch.device, or a "cuda[:N]" string where strings name devices) as the emulated one."""
    if strings and isinstance(value, str) and value.split(":")[0] == "cuda":
        return EMULATED
    if isinstance(value, torch.device) and value.type == "cuda":
        return EMULATED
    return value


class _EmulatedDevices(TorchFunctionMode):
    """Reads every "cuda" device given to a torch function as the emulated one."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0].to(EMULATED, non_blocking=kwargs.get("non_blocking", False))
        # a string argument names a device in `.to("cuda")` and in `device=`; elsewhere (autocast's
        # device_type, say) "cuda" stays a device type
        args = tuple(_as_emulated(value, func is torch.Tensor.to) for value in args)
        kwargs = {key: _as_emulated(value, key == "device") for key, value in kwargs.items()}
        if func in DATA_CONSTRUCTORS and _is_emulated_device(kwargs.get("device")):
            device = kwargs.pop("device")
            return func(*args, **kwargs).to(device)
        return func(*args, **kwargs)


_torch_save = torch.save


def _save_on_the_cpu(obj, f, *args, **kwargs):
    """torch.save with device tensors stored as CPU tensors: what loading a CUDA checkpoint
    with map_location="cpu" gives back (a wrapper subclass is no weights-only tensor)."""
    plain = tree_map(lambda value: value.inner.detach() if isinstance(value, EmulatedTensor) else value, obj)
    return _torch_save(plain, f, *args, **kwargs)


@contextlib.contextmanager
def emulated_cuda():
    """Run the enclosed code as on a machine with one (emulated) CUDA device; yields the
    dispatch mode, whose `on_device` counts the operators that gave a tensor on the device."""
    patches = [
        mock.patch("torch.cuda.is_available", lambda: True),
        mock.patch("torch.cuda.device_count", lambda: 1),
        mock.patch("torch.cuda.is_bf16_supported", lambda *args, **kwargs: True),
        mock.patch("torch.cuda._lazy_init", lambda: None),
        mock.patch("torch.cuda.synchronize", lambda *args, **kwargs: None),
        mock.patch("torch.cuda.reset_peak_memory_stats", lambda *args, **kwargs: None),
        mock.patch("torch.cuda.max_memory_allocated", lambda *args, **kwargs: 0),
        mock.patch("torch.cuda.get_device_name", lambda *args, **kwargs: "emulated CUDA device"),
        # torch.accelerator asks the driver (Adam's graph-capture check): no accelerator there
        mock.patch("torch.accelerator.current_accelerator", lambda *args, **kwargs: None),
        # a wrapper tensor cannot be an inference tensor: inference mode is read as no_grad
        mock.patch("torch.inference_mode", torch.no_grad),
        mock.patch("torch.save", _save_on_the_cpu),
    ]
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        stack.enter_context(_EmulatedDevices())
        yield stack.enter_context(_EmulatedDispatch())
