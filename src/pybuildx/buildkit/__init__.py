"""Our own pure-Python BuildKit client: generated protos (``_pb``), Control calls, the session
tunnel, SolveRequest assembly and ``build()``.

Import the submodules directly (``pybuildx.buildkit.control``, ``.build``, ``.session``): this
package module stays empty so that importing one piece does not pull in all the others.
"""
