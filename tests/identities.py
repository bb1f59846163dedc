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

# Siemens PXC building controller (vendor 7), as BACnet scanners report it.
BACNET_PXC = {"device_instance": 2098177, "object_name": "AHU-HALL-A", "vendor_id": 7,
              "vendor_name": "Siemens Building Technologies", "model_name": "Siemens BACnet Field Panel",
              "firmware_revision": "EPXC V3.5.2", "application_software_version": "AHU-A 2.1"}

# Hirschmann RS20 switch: sysDescr as Greenbone's detection reports it, enterprise 248, an ENTITY-MIB chassis and CPU.
SNMP_RS20 = {
    "sys_descr": "Hirschmann Railswitch",
    "sys_object_id": "1.3.6.1.4.1.248.14",
    "sys_name": "rs20-hall-a",
    "communities": ["public", "area"],
    "v3_users": ["otprobe"],
    "engine_id": "800000f803ec74bafe1c20",
    "entities": [
        {"index": 1, "class": "chassis", "descr": "RS20 chassis", "mfg_name": "Hirschmann",
         "model_name": "RS20-0800T1T1SDAUHC", "hardware_rev": "1.07", "serial": "943434001"},
        {"index": 2, "class": "module", "contained_in": 1, "descr": "CPU", "mfg_name": "Hirschmann",
         "model_name": "RS20-CPU", "firmware_rev": "09.0.08", "software_rev": "L2E-09.0.08"},
    ],
}

# S7-1500 OPC UA server.
OPCUA_S7_1500 = {  # public ApplicationUri/ProductUri patterns; BuildInfo values are plausible, not published ones
    "application_uri": "urn:SIMATIC.S7-1500.OPC-UA.Application:PLC_1",
    "application_name": "SIMATIC.S7-1500.OPC-UA.Application:PLC_1",
    "product_uri": "https://www.siemens.com/s7-1500",
    "manufacturer_name": "Siemens AG",
    "product_name": "SIMATIC S7-1500",
    "software_version": "V2.9.2",
    "build_number": "2.9.2.4",
    "build_date": "2021-06-15T00:00:00",
    "security_modes": ["None", "SignAndEncrypt"],
    "max_sessions": 2,
    "certificate": {"common_name": "PLC_1/OPCUA", "organization": "Siemens", "hash": "sha384",
                    "not_before": "2023-03-01T08:00:00", "valid_days": 7300},
}


# What a small plant says, per address and protocol, as the inventory tests write it through a store (SQLite and
# central): one S7 CPU, a Modbus/EtherNet-IP PLC whose two protocols agree, one EtherNet/IP controller.
INVENTORY_PLANT = {
    "127.0.1.10": [("s7", {"vendor": "Siemens", "model": "CPU 315-2 PN/DP", "serial": "S C-B1U393142011",
                           "firmware": "V3.2.7", "product_code": "6ES7 315-2EH14-0AB0"})],
    "127.0.2.11": [("modbus", {"vendor": "Schneider Electric", "product_code": "BME P58 1020", "firmware": "v02.70"}),
                   ("enip", {"vendor": "Schneider Electric", "model": "BME P58 1020", "serial": "00A1B2C3",
                             "firmware": "2.70", "vendor_id": 243})],
    "127.0.3.10": [("enip", {"vendor": "Rockwell Automation/Allen-Bradley", "model": "1769-L18ER/A LOGIX5318ER",
                             "serial": "6043BF65", "firmware": "21.11"})],
}
