"""What every family's CUDA kernels share: device code only, no torch and no loader.

- :mod:`~fractalshards.gpu.ops`: device arithmetic that rounds as the CPU kernels do (no fused
  multiply-add) and the counter-based streams of :mod:`fractalshards.seeds` on the device;
- :mod:`~fractalshards.gpu.mt19937`: CPython's ``random`` (MT19937) replayed on the device, one
  generator per thread;
- :mod:`~fractalshards.gpu.lines`: Pillow's line drawing (integer Bresenham) on the device;
- :mod:`~fractalshards.gpu.contract`: :class:`~fractalshards.gpu.contract.DeviceRenderer`, what a
  family's device renderer is.

Rendering a definition on a GPU is :class:`fractalshards.gpu_renderer.GPURenderer`'s; the training
loader that renders on the GPU is :class:`fractalshards.loader.RenderLoader`. Needs the ``gpu``
extra (numba-cuda); under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same kernels run
on the CPU, which is how they are tested without a GPU.
"""
