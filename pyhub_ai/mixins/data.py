"""Questions about a table of data, answered with safe, structured tools (never model-written code)."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from langchain_core.tools import BaseTool

DATA_ANALYST_PROMPT = """You are a careful data analyst. Answer questions about the data set described
below using ONLY the tools you are given; never guess numbers. Use describe_data first when you do
not know the data yet, query_rows / aggregate / value_counts for numbers and tables, and draw_chart
when a picture helps. Answer in the language of the question, briefly, citing the numbers you got.

The data set has {row_count} rows and these columns: {columns}.
{column_guideline}"""


@lru_cache(maxsize=16)
def _read_table(path: str, modified: float) -> Any:
    import pandas

    if path.lower().endswith((".xlsx", ".xls")):
        return pandas.read_excel(path)
    return pandas.read_csv(path)


class DataAnalystMixin:
    """Gives the model ``make_data_tools()`` over the consumer's DataFrame.

    Set ``dataframe_path`` (a CSV or Excel file; read once and cached until the file
    changes) or override ``get_dataframe()``; ``column_guideline`` explains the columns to
    the model. ``get_tools()`` adds the data tools to any ``tools`` the consumer has, and
    ``get_llm_prompt_context_data()`` fills ``{row_count}``, ``{columns}`` and
    ``{column_guideline}`` of the system prompt.
    """

    dataframe_path: str | os.PathLike[str] | None = None
    column_guideline: str = ""
    llm_system_prompt_template = DATA_ANALYST_PROMPT

    def get_dataframe(self) -> Any:
        """The table the questions are about (a pandas ``DataFrame``)."""
        from ..data import require_data_extra

        require_data_extra()
        if self.dataframe_path is None:
            raise ImproperlyConfigured(
                f"{type(self).__name__} requires either a definition of 'dataframe_path' "
                "or an implementation of 'get_dataframe()'."
            )
        path = Path(self.dataframe_path)
        return _read_table(str(path), path.stat().st_mtime)

    def get_column_guideline(self) -> str:
        return self.column_guideline

    def get_tools(self) -> list[BaseTool]:
        from ..data.tools import make_data_tools

        return [*super().get_tools(), *make_data_tools(self.get_dataframe())]

    def get_llm_prompt_context_data(self) -> dict[str, Any]:
        frame = self.get_dataframe()
        columns = ", ".join(f"{column} ({dtype})" for column, dtype in frame.dtypes.astype(str).items())
        return {
            **super().get_llm_prompt_context_data(),
            "row_count": len(frame),
            "columns": columns,
            "column_guideline": self.get_column_guideline(),
        }
