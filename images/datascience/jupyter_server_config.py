# The IDEs in the JupyterLab launcher, proxied by the user's own Jupyter server.
# They listen on unix sockets inside the container (never a TCP port another
# container could reach) and need no login of their own: only requests the
# Jupyter server has authenticated reach them. Their state lives in HOME, the
# user's pool folder.
import os

home = os.path.expanduser("~")
code_server_data = os.path.join(home, ".local", "share", "code-server")

c = get_config()  # noqa: F821
c.ServerProxy.servers = {
    "vscode": {
        "command": [
            # code-server with a clean workbench for a class (no AI chat unless DSHUB_VSCODE_AI).
            "dshub-code-server",
            code_server_data,
            "--auth=none",
            "--socket={unix_socket}",
            "--socket-mode=600",
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
            f"--extensions-dir={os.path.join(code_server_data, 'extensions')}",
            home,
        ],
        "unix_socket": True,
        "timeout": 60,
        "new_browser_tab": True,
        "launcher_entry": {
            "title": "VS Code",
            "icon_path": "/opt/dshub/icons/vscode.svg",
        },
    },
}
