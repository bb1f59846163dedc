"""Golden and negative S7comm vectors for the S7 probe, as TPKT frames (TCP payloads) in hex.

Derived from ITI/ICS-Security-Tools pcaps/<file>, CC-BY-4.0 (commit 9b826091e7ba3fbdd5997d31e116f29e09cbbb48):
pcaps/s7/snap7_s300_everything.pcapng (a snap7 client and a real CPU 315-2 PN/DP, 6ES7 315-2EH14-0AB0, V3.2.7),
pcaps/s7/s7comm_reading_plc_status.pcap (STEP 7 and an IM151-8 PN/DP CPU), pcaps/s7/snap7_s300_stop.pcapng
(a PLC STOP job). "Payload n" counts the data-carrying TCP segments of each file from 0.
"""

from vectors.s7_captures import (  # the same capture bytes the simulator's golden tests use
    COTP_CC as COTP_CC_STEP7,
)
from vectors.s7_captures import (
    COTP_CR as COTP_CR_STEP7,
)
from vectors.s7_captures import (
    SETUP_REPLY as SETUP_ACK,
)
from vectors.s7_captures import (
    SETUP_REQUEST,
    SZL_001C_REPLY_1,
    SZL_001C_REPLY_2,
    SZL_001C_REQUEST,
    SZL_0011_REPLY,
    SZL_0011_REQUEST,
    SZL_0424_REPLY,
    SZL_0424_REQUEST,
)
from vectors.s7_captures import (
    SZL_001C_CONTINUATION as SZL_CONTINUATION_REQUEST,
)
from vectors.s7_captures import (
    WRITE_VAR_REQUEST as WRITE_VAR_JOB,
)

# snap7_s300_stop.pcapng payload 0: Job function 0x29 PLC STOP (P_PROGRAM): must never leave otprobe
PLC_STOP_JOB = bytes.fromhex("0300002102f0803201000000020010000029000000000009505f50524f4752414d")

__all__ = [
    "COTP_CC_STEP7",
    "COTP_CR_STEP7",
    "PLC_STOP_JOB",
    "SETUP_ACK",
    "SETUP_REQUEST",
    "SZL_001C_REPLY_1",
    "SZL_001C_REPLY_2",
    "SZL_001C_REQUEST",
    "SZL_0011_REPLY",
    "SZL_0011_REQUEST",
    "SZL_0424_REPLY",
    "SZL_0424_REQUEST",
    "SZL_CONTINUATION_REQUEST",
    "WRITE_VAR_JOB",
]
