#ifndef CWSLAY_SHIM_H
#define CWSLAY_SHIM_H
/* wslay 1.1.1 (Debian libwslay-dev, which ships no pkg-config file: the module map names the header and the
 * library itself), plus <sys/eventfd.h> for the upgraded sockets' event thread, which Swift's Glibc module does
 * not bring. Only what Swift cannot use directly lives here: the opcodes as the uint8_t that wslay's `opcode`
 * fields hold (the enum imports as a struct of UInt32). No logic. */
#include <stdint.h>
#include <sys/eventfd.h>
#include <wslay/wslay.h>

/* The opcodes as uint8_t, the type of wslay_event_on_msg_recv_arg.opcode and wslay_event_msg.opcode. */
static const uint8_t CWSLAY_TEXT_FRAME = WSLAY_TEXT_FRAME;
static const uint8_t CWSLAY_BINARY_FRAME = WSLAY_BINARY_FRAME;
static const uint8_t CWSLAY_CONNECTION_CLOSE = WSLAY_CONNECTION_CLOSE;
#endif
