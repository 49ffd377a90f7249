"""Target kernels for [`diffprims.SeparableFilters`][]: small pure functions returning `(Kh, Kw)`.

```python
import diffprims as dp
target = dp.kernels.disk(50)        # the 50 x 50 bokeh disk, peak 1
```
"""

from ._filters._kernels import (
    box as box,
    disk as disk,
    gaussian as gaussian,
    polygon as polygon,
)
