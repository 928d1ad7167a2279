"""Bundle the front end and the demo model store into built wheels (not editable installs, which use the
repository's own folders)."""

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class BundleHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if version == "editable":
            return
        build_data["force_include"]["frontend"] = "app/_bundled/frontend"
        build_data["force_include"]["model_store"] = "app/_bundled/model_store"
