"""The data-analysis tools: describe, query, aggregate, count values, chart.

``make_data_tools(frame)`` returns LangChain tools bound to one DataFrame. Each validates its
arguments against the frame and returns a short text for the model plus a table or image
artifact for the page (stored by ``pyhub_ai.artifacts``).
"""
from __future__ import annotations

import io
from typing import Any, Literal

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from ..artifacts import ImageArtifact

Operator = Literal["==", "!=", "<", "<=", ">", ">=", "contains", "in", "isnull", "notnull"]
Aggregation = Literal["count", "sum", "mean", "median", "min", "max", "nunique"]
ChartKind = Literal["bar", "line", "hist", "scatter", "pie"]

#: Rows a table result shows at most.
MAX_ROWS = 50


class Filter(BaseModel):
    column: str = Field(description="An existing column name.")
    op: Operator
    value: Any = Field(default=None, description="The value to compare with (a list for 'in').")


class QueryArgs(BaseModel):
    filters: list[Filter] = Field(default_factory=list, description="Conditions, all of which must hold.")
    columns: list[str] = Field(default_factory=list, description="Columns to show (empty: all).")
    sort_by: str | None = Field(default=None, description="A column to sort by.")
    descending: bool = False
    limit: int = Field(default=10, ge=1, le=MAX_ROWS)


class AggregateArgs(BaseModel):
    group_by: list[str] = Field(default_factory=list, description="Columns to group by (empty: the whole table).")
    column: str | None = Field(default=None, description="The column to aggregate (not needed for count).")
    aggregation: Aggregation = "count"
    filters: list[Filter] = Field(default_factory=list)
    descending: bool = True
    limit: int = Field(default=20, ge=1, le=MAX_ROWS)


class ValueCountsArgs(BaseModel):
    column: str
    limit: int = Field(default=10, ge=1, le=MAX_ROWS)


class ChartArgs(BaseModel):
    kind: ChartKind = "bar"
    x: str | None = Field(default=None, description="Category or x column (default: the first text column).")
    y: str | None = Field(default=None, description="Numeric column (default: count rows).")
    aggregation: Aggregation = "sum"
    title: str = ""


class DataToolError(ValueError):
    """Arguments the data cannot answer (an unknown column, a bad comparison)."""


def make_data_tools(frame: Any) -> list[BaseTool]:
    """The tools over ``frame``; the model sees their argument schemas."""
    analyst = _Analyst(frame)
    return [
        StructuredTool.from_function(
            analyst.describe, name="describe_data", description="Describe the data set: columns, types, size, first rows and statistics.",
            response_format="content_and_artifact",
        ),
        StructuredTool.from_function(
            analyst.query, name="query_rows", args_schema=QueryArgs, response_format="content_and_artifact",
            description="Rows that match filters, with chosen columns, sorted, top N.",
        ),
        StructuredTool.from_function(
            analyst.aggregate, name="aggregate", args_schema=AggregateArgs, response_format="content_and_artifact",
            description="Group rows and aggregate a column (count, sum, mean, median, min, max, nunique).",
        ),
        StructuredTool.from_function(
            analyst.value_counts, name="value_counts", args_schema=ValueCountsArgs, response_format="content_and_artifact",
            description="How often each value of a column occurs.",
        ),
        StructuredTool.from_function(
            analyst.chart, name="draw_chart", args_schema=ChartArgs, response_format="content_and_artifact",
            description="Draw a bar, line, hist, scatter or pie chart of the data, as an image.",
        ),
    ]


class _Analyst:
    def __init__(self, frame: Any) -> None:
        self.frame = frame

    # -- tools ---------------------------------------------------------------------------

    def describe(self) -> tuple[str, Any]:
        """One line per column (type, count, then range and mean, or distinct values and the
        most common one), and the same as a table; statistics a column has none of are left
        out, never shown as NaN."""
        frame = self.frame
        rows = [self._column_summary(column) for column in frame.columns]
        lines = [f"{len(frame)} rows, {len(frame.columns)} columns."]
        lines += [f"- {row['column']} ({row['type']}): " + ", ".join(f"{key} {value}" for key, value in row.items()
                  if key not in ("column", "type") and value not in (None, "")) for row in rows]
        table = type(frame)([list(row.values()) for row in rows], columns=list(rows[0]) if rows else None, dtype=object)
        return "\n".join(lines), table

    def _column_summary(self, column: Any) -> dict[str, Any]:
        series = self.frame[column]
        summary: dict[str, Any] = {"column": str(column), "type": str(series.dtype), "count": int(series.count())}
        numeric = series.dtype.kind in "iuf" and series.count()
        summary["min"] = _short(series.min()) if numeric else None
        summary["max"] = _short(series.max()) if numeric else None
        summary["mean"] = _short(series.mean()) if numeric else None
        summary["distinct"] = None if numeric else int(series.nunique())
        common = series.mode()
        summary["most common"] = None if numeric or common.empty else str(common.iloc[0])
        return summary

    def query(self, filters: list[Filter] | None = None, columns: list[str] | None = None, sort_by: str | None = None,
              descending: bool = False, limit: int = 10) -> tuple[str, Any]:
        frame = self._filtered(filters or [])
        if sort_by:
            frame = frame.sort_values(self._column(sort_by), ascending=not descending)
        if columns:
            frame = frame[[self._column(column) for column in columns]]
        result = frame.head(limit)
        return f"{len(frame)} matching rows; the first {len(result)}:\n{result.to_string()}", result

    def aggregate(self, group_by: list[str] | None = None, column: str | None = None, aggregation: str = "count",
                  filters: list[Filter] | None = None, descending: bool = True, limit: int = 20) -> tuple[str, Any]:
        frame = self._filtered(filters or [])
        keys = [self._column(key) for key in group_by or []]
        target = self._column(column) if column else None
        if target is None and aggregation != "count":
            raise DataToolError(f"'{aggregation}' needs a column.")
        if keys:
            grouped = frame.groupby(keys)
            series = grouped.size() if target is None else grouped[target].agg(aggregation)
            name = "count" if target is None else f"{aggregation}({target})"
            result = series.rename(name).reset_index().sort_values(name, ascending=not descending).head(limit)
        else:
            value = len(frame) if target is None else frame[target].agg(aggregation)
            result = self._frame({"aggregation": [aggregation], "column": [target or "*"], "value": [value]})
        return result.to_string(index=False), result

    def value_counts(self, column: str, limit: int = 10) -> tuple[str, Any]:
        name = self._column(column)
        result = self.frame[name].value_counts().head(limit).rename("count").reset_index()
        return result.to_string(index=False), result

    def chart(self, kind: str = "bar", x: str | None = None, y: str | None = None, aggregation: str = "sum",
              title: str = "") -> tuple[str, ImageArtifact]:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        x_column = self._column(x) if x else self._category_column()
        y_column = self._column(y) if y else None
        figure = Figure(figsize=(6, 4), dpi=100)
        axes = figure.subplots()
        if kind == "hist":
            self.frame[y_column or x_column].plot.hist(ax=axes)
        elif kind == "scatter":
            if y_column is None:
                raise DataToolError("A scatter chart needs both x and y columns.")
            self.frame.plot.scatter(x=x_column, y=y_column, ax=axes)
        else:
            grouped = self.frame.groupby(x_column)
            series = grouped.size() if y_column is None else grouped[y_column].agg(aggregation)
            getattr(series.plot, kind)(ax=axes)
        title = title or f"{kind} chart of {y_column or 'rows'} by {x_column}"
        axes.set_title(title)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return f"Drew a {kind} chart: {title}.", ImageArtifact(buffer.getvalue(), alt=title)

    # -- validation -----------------------------------------------------------------------

    def _column(self, name: str) -> str:
        if name not in self.frame.columns:
            raise DataToolError(f"There is no column {name!r}. Columns: {', '.join(map(str, self.frame.columns))}.")
        return name

    def _category_column(self) -> str:
        """The text column with the fewest distinct values (the best default category)."""
        text_columns = [
            column for column, dtype in self.frame.dtypes.items() if dtype == object or str(dtype) in ("string", "str", "category")
        ]
        if not text_columns:
            return self.frame.columns[0]
        return min(text_columns, key=lambda column: self.frame[column].nunique())

    def _filtered(self, filters: list[Filter]) -> Any:
        frame = self.frame
        for condition in filters:
            condition = condition if isinstance(condition, Filter) else Filter.model_validate(condition)
            series = frame[self._column(condition.column)]
            frame = frame[self._mask(series, condition.op, condition.value)]
        return frame

    @staticmethod
    def _mask(series: Any, op: str, value: Any) -> Any:
        try:
            if op == "isnull":
                return series.isna()
            if op == "notnull":
                return series.notna()
            if op == "contains":
                return series.astype(str).str.contains(str(value), case=False, regex=False)
            if op == "in":
                return series.isin(value if isinstance(value, list) else [value])
            return {"==": series.__eq__, "!=": series.__ne__, "<": series.__lt__, "<=": series.__le__,
                    ">": series.__gt__, ">=": series.__ge__}[op](value)
        except TypeError as exc:
            raise DataToolError(f"Cannot compare column {series.name!r} with {value!r}: {exc}") from exc

    def _frame(self, data: dict[str, list[Any]]) -> Any:
        return type(self.frame)(data)


def _short(value: Any) -> Any:
    """A number for people: integers as they are, others rounded to two decimals."""
    value = value.item() if hasattr(value, "item") else value
    return value if isinstance(value, int) else round(float(value), 2)
