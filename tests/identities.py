"""Device identities the simulator and probe tests share: real devices, from public captures and device reports.

Kept once so that the simulator's read-back tests and the probes' tests exercise the same devices.
"""

# CPU 1516F as reported in python-snap7 #783: SZL 0x0011 index 0x0007 and index 0x0081 disagree on this CPU.
CPU1516F = {
    "mode": "s300",
    "slot": 1,
    "order_code": "6ES7 516-3FN02-0AB0",
    "hardware_version": 2,
    "bgtyp": 0,
    "firmware": "V2.9.2",
    "firmware_ext": "V3.3.0",
    "as_name": "S71500/ET200MP station_1",
    "module_name": "PLC_Line2",
    "plant_id": "Line 2 packaging",
    "serial": "S V-L4HB12342019",
    "module_type_name": "CPU 1516F-3 PN/DP",
    "memory_card_serial": "SMC 2C3F11A9",
    "location": "Hall B cabinet 4",
}

# Schneider M340 (as Greenbone's gb_schneider_modbus_detect.nasl reports it): FC43 basic and regular objects.
M340_OBJECTS = {
    "vendor_name": "Schneider Electric",
    "product_code": "BMX P34 2020",
    "revision": "v2.8",
    "vendor_url": "http://www.schneider-electric.com",
    "product_name": "Modicon M340",
    "model_name": "BMX P34 2020",
}
