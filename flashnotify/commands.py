"""What the project's management commands share."""

from argparse import RawDescriptionHelpFormatter

from django.core.management.base import BaseCommand


class ExamplesCommand(BaseCommand):
    """A management command whose --help ends with its `examples` text, line breaks kept."""

    examples = ""

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog, parser.formatter_class = self.examples, RawDescriptionHelpFormatter
        return parser
