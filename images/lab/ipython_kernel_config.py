# Python kernels of this image (all users): see dshub_oom_notice.
c = get_config()  # noqa: F821 -- provided by IPython
c.InteractiveShellApp.extensions = ["dshub_oom_notice"]
