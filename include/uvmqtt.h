/* placeholder */
#include "uvmqtt/codec.h"
