#!/usr/bin/env python
"""Django's command-line utility. Development settings unless DJANGO_SETTINGS_MODULE says otherwise."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings.dev")
    if sys.argv[1:2] == ["migrate"] and not {"-h", "--help"} & set(sys.argv):
        # A database that cannot be used is one line saying what to do, not a traceback.
        from project.database_check import exit_unless_database_usable

        exit_unless_database_usable()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
