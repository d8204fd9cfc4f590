import gzip

from core.phones import normalize
from simulation.retail import load_retail

CSV = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,,United Kingdom
C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom
"""


def test_invoices_become_bus_orders(tmp_path):
    path = tmp_path / "retail.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(CSV)
    orders, goods = load_retail(path)
    assert [o["id"] for o in orders] == ["536365", "536366", "C536379"]
    first = orders[0]
    assert first["date"] == "2010-12-01T08:26:00"
    assert normalize(first["clientTel"]) == "79000017850"  # 79 + CustomerID padded to 9
    assert first["basket"] == [{"goodsId": "85123A", "quantity": 6, "price": 2.55},
                               {"goodsId": "71053", "quantity": 6, "price": 3.39}]
    assert orders[1]["clientTel"] is None  # no CustomerID: a guest order
    assert orders[2]["basket"][0]["quantity"] == -1  # passed through; the cleaner decides
    assert {"id": "71053", "name": "WHITE METAL LANTERN"} in goods
